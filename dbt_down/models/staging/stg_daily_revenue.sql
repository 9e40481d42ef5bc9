with

source as (

    select * from {{ source('dbt_up', 'public_daily_revenue') }}

),

renamed as (

    select
        revenue_date,
        order_count,
        net_revenue

    from source

),

final as (

    select * from renamed

)

select * from final
