with

customer_value as (

    select * from {{ ref('marketing', 'customer_value') }}

),

final as (

    select
        customer_id,
        lifetime_amount as ltv,
        lifetime_amount / nullif(order_count, 0) as average_order_amount

    from customer_value

)

select * from final
